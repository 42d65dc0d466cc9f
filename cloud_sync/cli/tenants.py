"""`marketsync tenant add|list`: the sellers of an installation of several (cloud_sync.tenants), in the
`[ui] language` of the main cloud.toml.

  marketsync tenant add ID [--name "ООО Ромашка"] [--admin LOGIN] [--site ID ...] [--cloud-processes N]
                           [--config CLOUD_TOML]
      the seller's folder and commented cloud.toml, its store (migrated), its first owner (the password is
      printed here once and kept nowhere), its broker namespace (users, ACL block, password lines, envelope
      keys), then what to do next; a running `cloud serve` serves it at /t/ID/ within seconds
  marketsync tenant list [--config CLOUD_TOML] [--json]
      every seller: id, name, sites, accounts, store
"""

from __future__ import annotations

import argparse
import json
import sys

from cloud_sync import tenants
from cloud_sync.access.users import UserError
from cloud_sync.cli import fail, load, t
from cloud_sync.config import CloudConfig, ConfigError

PROG = "marketsync tenant"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="the sellers of an installation of several")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add a seller: its folder, config, store, first owner and broker users")
    add.add_argument("id", help="the seller's id: 2-31 characters a-z, 0-9 and - (its pages: /t/ID/)")
    add.add_argument("--name", default="", help="the seller's name, e.g. \"ООО Ромашка\"")
    add.add_argument("--admin", default="admin", help="the first owner's login (default: admin)")
    add.add_argument("--site", action="append", help="a warehouse site of the seller (repeat; default: site-1)")
    add.add_argument("--cloud-processes", type=int, default=0,
                     help="broker users for N cloud processes sharing the sites' traffic ([link] share_group)")
    lst = sub.add_parser("list", help="the sellers: id, name, sites, accounts, store")
    lst.add_argument("--json", action="store_true", help="one JSON document instead of text")
    for sp in (add, lst):
        sp.add_argument("--config", help="the installation's cloud.toml (else $MARKETSYNC_CONFIG,"
                                         " ./config/cloud.toml, /etc/marketsync/cloud.toml)")
    args = p.parse_args(argv)
    try:
        main_cfg = load(args, installation=True)
    except ConfigError as exc:
        return fail(PROG, exc)
    try:
        return _add(args, main_cfg) if args.cmd == "add" else _list(args, main_cfg)
    except tenants.TenantError as exc:
        return fail(PROG, t(exc.msgid, **exc.values))
    except (ConfigError, UserError) as exc:
        return fail(PROG, exc)


def _add(args: argparse.Namespace, main_cfg: CloudConfig) -> int:
    made = tenants.add(main_cfg, args.id, name=args.name, admin=args.admin, sites=args.site,
                       cloud_processes=args.cloud_processes)
    tid, folder, creds = made.tenant.id, made.tenant.folder, made.broker_dir / "credentials"
    cloud_user = made.broker_users["cloud"]
    print(t("seller %(id)s (%(name)s) added in %(folder)s", id=tid, name=made.tenant.name, folder=folder))
    print(t("its store: %(store)s (migrated)", store=made.store))
    print(t("its pages: %(path)s of this installation; a running `marketsync cloud serve` serves them within"
            " seconds, else at its next start", path=f"/t/{tid}/"))
    # the one place the password is shown: printed once, here, never logged and kept nowhere
    print(t("its first owner: %(login)s, password: %(password)s (shown once and kept nowhere: write it down"
            " now; they change it on the Password page)", login=made.admin, password=made.password))
    print(t("next:"))
    print("  1. " + t("on the broker: append %(acl)s to its acl file and %(passwd)s to its passwd file, then"
                      " restart it (the seller's users: %(users)s; each may touch only ms/t/%(id)s/v1/...)",
                      acl=made.broker_dir / "acl", passwd=made.broker_dir / "passwd",
                      users=", ".join(made.broker_users.values()), id=tid))
    for site in made.tenant.sites:
        print("  2. " + t("site %(site)s: in its edge.toml [mqtt] set tenant = \"%(id)s\", username = \"%(user)s\","
                          " password_file = the copy of %(password)s and keys_file = the copy of %(keys)s",
                          site=site, id=tid, user=made.broker_users[site],
                          password=creds / f"{made.broker_users[site]}.password", keys=creds / f"{site}.keys"))
    print("  3. " + t("its marketplace accounts: in %(config)s (every key is documented in config/cloud.toml),"
                      " or their tokens in Settings under %(path)s", config=folder / tenants.CONFIG,
                      path=f"/t/{tid}/settings"))
    print("  " + t("the cloud's side is ready: %(user)s with %(password)s and %(keys)s are named in its"
                   " cloud.toml", user=cloud_user, password=creds / f"{cloud_user}.password",
                   keys=creds / f"{cloud_user}.keys"))
    return 0


def _list(args: argparse.Namespace, main_cfg: CloudConfig) -> int:
    found = []
    for tid in tenants.ids(main_cfg):
        try:
            cfg = tenants.load(main_cfg, tid)
            found.append({"id": tid, "name": cfg.legal.seller.name, "sites": sorted(cfg.sites),
                          "accounts": sorted(cfg.accounts), "store": tenants.store_label(cfg)})
        except (ConfigError, tenants.TenantError) as exc:
            found.append({"id": tid, "error": str(exc)})
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return 0
    if not main_cfg.tenants_dir:
        print(t("%(file)s has no [tenants] section: add one ([tenants] dir = \"tenants\") to host several sellers",
                file=main_cfg.config_file or "cloud.toml"), file=sys.stderr)
    if not found:
        print(t("no sellers besides the main one"))
    for row in found:
        if "error" in row:
            print(t("%(id)s: its config cannot be used: %(error)s", id=row["id"], error=row["error"]))
            continue
        print(t("%(id)s «%(name)s»: sites %(sites)s; accounts %(accounts)s; store %(store)s", id=row["id"],
                name=row["name"], sites=", ".join(row["sites"]) or "—", accounts=", ".join(row["accounts"]) or "—",
                store=row["store"]))
    return 0
