"""Start the character customizer: config -> model check -> store -> studio -> Gradio UI.

    python app.py                       # bundled model (default profile of spaces.yaml)
    python app.py --profile sd15        # a real Stable Diffusion profile
    python app.py --config other.yaml --port 7861
    python app.py --auth-file users.txt # private deployment: a login per person (lines "user:password")
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

# Idle torch/OpenMP threads spin-wait by default; on a shared host (a CPU Space, CI) that made inference 6-20x
# slower here. Set before torch is imported; an explicit environment setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from customizer.availability import require_available
from customizer.config import load_config
from customizer.errors import ConfigError, ModelUnavailable, StorageError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="path to spaces.yaml (default: the repo's, or $CUSTOMIZER_CONFIG)")
    ap.add_argument("--profile", help="model profile name (default: default_profile, or $CUSTOMIZER_PROFILE)")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    ap.add_argument("--preload", action="store_true",
                    default=os.environ.get("CUSTOMIZER_PRELOAD", "1" if os.environ.get("SPACE_ID") else "0") == "1",
                    help="load the model before serving (default on Spaces; elsewhere on first use)")
    ap.add_argument("--auth-file", default=os.environ.get("CUSTOMIZER_AUTH_FILE"),
                    help="require a login: a file of 'user:password' lines; each user owns their characters")
    return ap.parse_args(argv)


def read_auth_file(path: str) -> list[tuple[str, str]]:
    """'user:password' lines (blank lines and '#' comments skipped) -> gradio's auth list."""
    pairs = []
    for n, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{path}:{n}: expected 'user:password'")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"{path}: no 'user:password' lines")
    return pairs


def load_engine(profile):
    """The Studio's engine factory, called on first use: torch and diffusers are imported then, not at start."""
    from customizer.engine.pipeline import Engine

    return Engine(profile)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        profile = config.profile(args.profile)
        require_available(profile)  # before any heavy import: a missing model is a message, not a traceback
        auth = read_auth_file(args.auth_file) if args.auth_file else None
    except (ConfigError, ModelUnavailable, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from customizer.service import Studio
    from customizer.store import Store
    from customizer.ui import build_demo, css_for

    try:
        store = Store(config.db_path, config.data_dir)
        store.prune_empty_drafts()  # left only by a crash mid-design; nothing is in flight yet
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # the composition root: the Studio (no torch, no gradio) gets its engine factory from here
    studio = Studio(config, profile, store, engine_factory=load_engine, enforce_budget=True)
    if args.preload:
        try:
            studio.engine  # noqa: B018 - load now so the first click is fast
        except ModelUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    demo = build_demo(studio)
    demo.queue(default_concurrency_limit=1, max_size=32)
    print(f"Character customizer: profile '{profile.name}', database {config.db_path}", flush=True)
    from starlette.middleware import Middleware

    from customizer.api_guard import ApiGuard

    demo.launch(server_name=args.host, server_port=args.port, css=css_for(studio), auth=auth,
                allowed_paths=[str(config.data_dir / "images")],
                blocked_paths=[str(config.db_path), str(config.data_dir / "embeddings"),
                               str(config.data_dir / "loras")],
                # malformed API calls get a clear 4xx, not gradio's 500 / {"error": null} (customizer/api_guard.py)
                app_kwargs={"middleware": [Middleware(ApiGuard, blocks=demo)]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
