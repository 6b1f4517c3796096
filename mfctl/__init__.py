"""mfctl: a cluster manager for LLM pretraining with MindSpore and MindFormers."""

__version__ = "0.1.0"
