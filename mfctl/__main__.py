from mfctl.cli import entry

entry()
