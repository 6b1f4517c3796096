"""Test fakes: scripted stand-ins that tests and benches drive (never imported by ``mfctl``).

``transport``: ``ScriptedTransport``, a node that answers commands from a script (node operations).
``dashboard``: scripted dashboard sources (``StaticSource``, ``FakeStopSource``) and deterministic
``synthetic_snapshot``s, for the TUI's pilot and snapshot tests and ``bench/dashboard.py``.
``sshserver``: ``SshServer``, a real SSH server (paramiko's) in the test's process on 127.0.0.1,
for the host-key and authentication unit tests, which need no root.
A fake serves unit tests of pure logic; a path users run is also tested with the real thing.
"""
