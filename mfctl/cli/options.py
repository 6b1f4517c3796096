"""Options and arguments several commands share, and the helpers that turn them into objects.

One definition each, so ``--dir`` or ``--ssh-config`` reads the same in every command's ``--help``.
"""

from __future__ import annotations

from pathlib import Path

import typer

DirOpt = typer.Option(Path("."), "--dir", "-d", help="The job directory (holds mfctl.yaml).",
                      show_default=True)
NodesOpt = typer.Option(None, "--nodes", "-n", help="Hosts file to use instead of the job's.")
MasterAddrOpt = typer.Option(None, "--master-addr", help="Override MASTER_ADDR.")
# render and plan only resolve host aliases; the commands that connect take SshConfigOpt below.
AliasSshConfigOpt = typer.Option(None, "--ssh-config", help="ssh_config for host aliases.")

SshConfigOpt = typer.Option(None, "--ssh-config", help="ssh_config file, like `ssh -F` (read through "
                            "`ssh -G`). Default: ~/.ssh/config and /etc/ssh/ssh_config.")
AcceptNewOpt = typer.Option(False, "--accept-new-hosts",
                            help="Record the host key of nodes never seen before: StrictHostKeyChecking "
                            "yes becomes OpenSSH's accept-new. A changed or revoked key is still refused.")
FanoutOpt = typer.Option(64, "--fanout", min=1, help="At most this many nodes are contacted at once.")
TimeoutOpt = typer.Option(None, "--connect-timeout", min=0.5, help="SSH connect timeout, seconds "
                          "(default: the ssh_config's ConnectTimeout, else 10).")
JobArg = typer.Argument(None, help="Job id or name (default: the newest job launched from --dir).")


def json_opt(help: str = "Print as JSON.") -> typer.models.OptionInfo:
    """``--json``: each command says what it prints, so the help text is the caller's."""
    return typer.Option(False, "--json", help=help)


def ssh_opts(ssh_config: Path | None, accept_new_hosts: bool, fanout: int,
             connect_timeout: float | None):
    """The SSH options of check/launch as the one object the transports take."""
    from mfctl.remote.connect import SshOptions

    return SshOptions(str(ssh_config.resolve()) if ssh_config else None, accept_new_hosts,
                      connect_timeout, fanout)


def resolver(ssh_config: Path | None):
    """Host alias resolution through ``ssh -G`` with this ssh_config (None: the user's own)."""
    from mfctl.remote.resolve import make_resolver

    return make_resolver(ssh_config)
