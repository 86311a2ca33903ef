"""The Python `hvac` client (unchanged) against latch's Vault-compatible API:
KV v2 put/get/list/delete/undelete/destroy/metadata/patch, and the sys
endpoints hvac uses for them. VAULT_ADDR and VAULT_TOKEN come from the test;
every check is an assert, so a failure exits non-zero with its line."""
import os
import sys

import hvac
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest, Unauthorized

client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
secret = os.environ["LATCH_TEST_SECRET"]

assert client.sys.is_initialized()
assert not client.sys.is_sealed()
status = client.sys.read_seal_status()
assert status["type"] == "shamir" and status["sealed"] is False, status

client.sys.enable_secrets_engine(backend_type="kv", path="hv", options={"version": "2"})
mounts = client.sys.list_mounted_secrets_engines()["data"]
assert "hv/" in mounts and mounts["hv/"]["options"]["version"] == "2", mounts

kv = client.secrets.kv.v2
r = kv.create_or_update_secret(path="team/db", secret={"password": secret, "user": "app"}, mount_point="hv")
assert r["data"]["version"] == 1, r
r = kv.create_or_update_secret(path="team/db", secret={"password": "second", "user": "app"}, mount_point="hv", cas=1)
assert r["data"]["version"] == 2, r
try:
    kv.create_or_update_secret(path="team/db", secret={"x": "y"}, mount_point="hv", cas=1)
    raise AssertionError("a stale check-and-set was accepted")
except InvalidRequest as e:
    assert "check-and-set" in str(e), e

got = kv.read_secret_version(path="team/db", mount_point="hv", raise_on_deleted_version=True)
assert got["data"]["data"] == {"password": "second", "user": "app"}, got
assert got["data"]["metadata"]["version"] == 2
old = kv.read_secret_version(path="team/db", version=1, mount_point="hv", raise_on_deleted_version=True)
assert old["data"]["data"]["password"] == secret

kv.create_or_update_secret(path="team/web/tls", secret={"crt": "c"}, mount_point="hv")
assert kv.list_secrets(path="team", mount_point="hv")["data"]["keys"] == ["db", "web/"]
assert kv.list_secrets(path="", mount_point="hv")["data"]["keys"] == ["team/"]

kv.patch(path="team/db", secret={"extra": "1"}, mount_point="hv")
got = kv.read_secret_version(path="team/db", mount_point="hv", raise_on_deleted_version=True)
assert got["data"]["data"] == {"password": "second", "user": "app", "extra": "1"}, got

kv.delete_latest_version_of_secret(path="team/db", mount_point="hv")
try:
    kv.read_secret_version(path="team/db", mount_point="hv", raise_on_deleted_version=True)
    raise AssertionError("a deleted version was readable")
except InvalidPath:
    pass
kv.undelete_secret_versions(path="team/db", versions=[3], mount_point="hv")
assert kv.read_secret_version(path="team/db", mount_point="hv", raise_on_deleted_version=True)["data"]["data"]["extra"] == "1"

kv.destroy_secret_versions(path="team/db", versions=[1], mount_point="hv")
meta = kv.read_secret_metadata(path="team/db", mount_point="hv")["data"]
assert meta["versions"]["1"]["destroyed"] is True and meta["current_version"] == 3, meta

kv.update_metadata(path="team/db", max_versions=2, custom_metadata={"owner": "dba"}, mount_point="hv")
meta = kv.read_secret_metadata(path="team/db", mount_point="hv")["data"]
assert meta["max_versions"] == 2 and meta["custom_metadata"] == {"owner": "dba"}, meta

kv.delete_metadata_and_all_versions(path="team/db", mount_point="hv")
try:
    kv.read_secret_metadata(path="team/db", mount_point="hv")
    raise AssertionError("deleted metadata was readable")
except InvalidPath:
    pass

# Refusals reach hvac as its exceptions.
try:
    hvac.Client(url=os.environ["VAULT_ADDR"], token="lts_not-a-token").secrets.kv.v2.read_secret_version(
        path="team/web/tls", mount_point="hv", raise_on_deleted_version=True)
    raise AssertionError("a bad token was accepted")
except (Unauthorized, Forbidden):
    pass

# Token auth: a child token carries its creator's rights, is bounded by it,
# renews, and is revoked with it (and takes its own children along).
child = client.auth.token.create(ttl="10m", meta={"job": "deploy"}, display_name="ci")["auth"]
assert child["renewable"] is True and 0 < child["lease_duration"] <= 600, child
child_client = hvac.Client(url=os.environ["VAULT_ADDR"], token=child["client_token"])
me = child_client.auth.token.lookup_self()["data"]
assert me["accessor"] == child["accessor"] and me["meta"] == {"job": "deploy"} and me["display_name"] == "token-ci", me
assert child_client.secrets.kv.v2.read_secret_version(path="team/web/tls", mount_point="hv", raise_on_deleted_version=True)["data"]["data"] == {"crt": "c"}
by_accessor = client.auth.token.lookup_accessor(child["accessor"])["data"]
assert by_accessor["id"] == "" and by_accessor["accessor"] == child["accessor"], by_accessor
assert client.auth.token.lookup(child["client_token"])["data"]["id"] == child["client_token"]
renewed = child_client.auth.token.renew_self(increment="20m")["auth"]
assert 600 < renewed["lease_duration"] <= 1200, renewed
grandchild = child_client.auth.token.create(ttl="1h")["auth"]
client.auth.token.revoke(child["client_token"])
for t in (child["client_token"], grandchild["client_token"]):
    try:
        hvac.Client(url=os.environ["VAULT_ADDR"], token=t).auth.token.lookup_self()
        raise AssertionError("a revoked token still works")
    except (Unauthorized, Forbidden):
        pass
try:
    client.auth.token.create(policies=["admin"])
    raise AssertionError("a Vault policy was accepted")
except InvalidRequest as e:
    assert "policies" in str(e), e

client.sys.disable_secrets_engine(path="hv")
assert "hv/" not in client.sys.list_mounted_secrets_engines()["data"]
print("hvac: ok")
sys.exit(0)
