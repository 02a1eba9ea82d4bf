"""`flyte-lab dashboard`: serve the Panel dashboard (flyte_lab/dashboard) on Panel's own server."""

from __future__ import annotations

import argparse
import json

from flyte_lab.errors import UserInputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5006, help="port (default 5006; 0 picks a free one)")
    p.add_argument("--allow-websocket-origin", action="append", default=[], metavar="HOST[:PORT]",
                   help="another host the pages may be opened from (repeatable)")
    p.add_argument("--basic-auth", help="a password, or a JSON file of users and passwords (Panel's --basic-auth)")
    p.add_argument("--cookie-secret", help="secret for signed cookies (needed with --basic-auth/--oauth-*)")
    for name in ("provider", "key", "secret", "redirect-uri", "encryption-key"):
        p.add_argument(f"--oauth-{name}", help=f"passed to Panel's --oauth-{name}")
    p.add_argument("--oauth-extra-params", help="JSON object passed to Panel's --oauth-extra-params")


def dashboard(args: argparse.Namespace) -> int:
    from flyte_lab.dashboard.server import bind

    extra = None
    if args.oauth_extra_params:
        try:
            extra = json.loads(args.oauth_extra_params)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--oauth-extra-params is not JSON: {exc}") from None
    server = bind(args.address, args.port, args.allow_websocket_origin, basic_auth=args.basic_auth,
                  cookie_secret=args.cookie_secret, oauth_provider=args.oauth_provider, oauth_key=args.oauth_key,
                  oauth_secret=args.oauth_secret, oauth_redirect_uri=args.oauth_redirect_uri,
                  oauth_encryption_key=args.oauth_encryption_key, oauth_extra_params=extra)
    # printed once listening, with the port really bound (`--port 0` picks one)
    print(f"flyte-lab dashboard: http://{args.address}:{server.port}/ (Ctrl-C stops it)", flush=True)
    server.start()
    server.io_loop.start()
    return 0
