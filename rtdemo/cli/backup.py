"""`rtdemo backup`: the host's hand on the workspace's Hub backup (`rtdemo.workspace.backup`).

    RTDEMO_BACKUP_REPO=you/rtdemo-backup rtdemo backup now        # push what changed, now
    rtdemo backup restore --repo you/rtdemo-backup --workspace ws  # into an empty workspace
    rtdemo backup restore --revision COMMIT                        # an older state of the backup

The repo comes from `--repo`, else `$RTDEMO_BACKUP_REPO`; the other settings from the environment
(`RTDEMO_BACKUP_CHECKPOINTS`, `RTDEMO_BACKUP_MAX_MODEL_MB`). The token from the environment only
(`HF_TOKEN`, else the one `hf auth login` saved): there is no flag for it, so it never reaches
shell history. The endpoint: `--endpoint`, else `$HF_ENDPOINT`, else huggingface.co.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from rtdemo.cli.common import add_workspace_flag
from rtdemo.errors import UserError
from rtdemo.workspace.store import workspace_path


def _settings_and_token(args: argparse.Namespace):
    # huggingface_hub is imported here, not when the CLI starts (it is not needed elsewhere).
    from huggingface_hub import get_token

    from rtdemo.workspace.backup import REPO_ENV, BackupSettings, check_repo_id

    env = dict(os.environ)
    if args.repo:
        env[REPO_ENV] = check_repo_id(args.repo)
    settings = BackupSettings.from_env(env)
    if settings is None:
        raise UserError(f"no backup repo: give --repo OWNER/NAME or set {REPO_ENV}")
    if args.endpoint:
        settings = replace(settings, endpoint=args.endpoint.strip().rstrip("/"))
    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise UserError(
            "no Hub token: set HF_TOKEN (a token with write access) or run `hf auth login`"
        )
    return settings, token


def cmd_backup_now(args: argparse.Namespace) -> int:
    """Push the workspace to its backup repo now."""
    from rtdemo.workspace.backup import WorkspaceBackup, hub_api

    settings, token = _settings_and_token(args)
    workspace = workspace_path(args.workspace)
    backup = WorkspaceBackup(workspace, settings, hub_api(settings, token))
    backup.prepare_repo()
    result = backup.push()
    for item in result.left_out:
        print(f"left out: {item['path']} ({item['bytes']:,} bytes, {item['why']})")
    if result.commit is None:
        print(f"nothing changed since the backup in {settings.repo_id}")
    else:
        print(
            f"backed up {workspace} to {settings.repo_id}: {len(result.uploaded)} files "
            f"updated, {len(result.deleted)} removed (commit {result.commit[:12]})"
        )
    return 0


def cmd_backup_restore(args: argparse.Namespace) -> int:
    """Restore the backup into an empty workspace."""
    from rtdemo.workspace.backup import restore

    settings, token = _settings_and_token(args)
    workspace = workspace_path(args.workspace)
    restored = restore(workspace, settings, token, revision=args.revision)
    if restored is None:
        raise UserError(
            f"nothing to restore: {settings.repo_id} holds no backup (or this token cannot see "
            "it; it must be a token of the repo's owner)"
        )
    print(
        f"restored {restored.files} files from {settings.repo_id} (commit "
        f"{restored.commit[:12]}) into {workspace}"
    )
    if restored.jobs_stopped:
        jobs = ", ".join(map(str, restored.jobs_stopped))
        print(f"jobs interrupted by the backup's end, to resume (rtdemo jobs resume N): {jobs}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `backup now|restore` to the CLI."""
    backup = commands.add_parser("backup", help="back the workspace up to a private Hub repo")
    actions = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    now = actions.add_parser("now", help="push what changed to the backup repo now")
    now.set_defaults(func=cmd_backup_now)
    again = actions.add_parser("restore", help="restore the backup into an empty workspace")
    again.add_argument("--revision", help="a commit of the backup repo (default: its newest state)")
    again.set_defaults(func=cmd_backup_restore)
    for sub in (now, again):
        sub.add_argument("--repo", help="the backup dataset repo OWNER/NAME ($RTDEMO_BACKUP_REPO)")
        sub.add_argument("--endpoint", help="the Hub's URL (default: $HF_ENDPOINT, huggingface.co)")
        add_workspace_flag(sub)
