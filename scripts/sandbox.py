"""The AWS side of scripts/sandbox: bootstrap, seed and inspect a moto server with boto3.

    python3 scripts/sandbox.py bootstrap ENDPOINT ADMIN_ENV_FILE
    python3 scripts/sandbox.py seed      ENDPOINT ADMIN_ENV_FILE STATE_FILE
    python3 scripts/sandbox.py report    ENDPOINT ADMIN_ENV_FILE STATE_FILE KEYS_JSON

Secrets never reach stdout or stderr: the admin key goes to ADMIN_ENV_FILE (mode 0600), the
keys credrot creates stay in KEYS_JSON; only access key ids and ARNs are printed.
"""

import json
import os
import sys

import boto3
from botocore.exceptions import ClientError

REGION = "us-east-1"
ROTATED_PATH = "/PSKServiceAccounts/"
OTHER_PATH = "/Humans/"
ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
)

# name -> initial key states, oldest first (True: Active, False: Inactive)
ROTATED_USERS = {
    "psk-no-key": [],
    "psk-one-key": [True],
    "psk-one-inactive": [False],
    "psk-two-active": [True, True],
    "psk-inactive-then-active": [False, True],
    "psk-active-then-inactive": [True, False],
}
OTHER_USERS = {"alice": [True]}


def client(service, endpoint, key_id, secret):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def admin_client(service, endpoint, admin_env):
    values = {}
    with open(admin_env) as f:
        for line in f:
            name, _, value = line.strip().removeprefix("export ").partition("=")
            values[name] = value
    return client(service, endpoint, values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"])


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def bootstrap(endpoint, admin_env):
    """The three unauthenticated requests moto allows: after them, IAM auth is enforced."""
    iam = client("iam", endpoint, "bootstrap", "bootstrap")
    iam.create_user(UserName="sandbox-admin")
    iam.put_user_policy(UserName="sandbox-admin", PolicyName="allow-all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="sandbox-admin")["AccessKey"]
    write_private(
        admin_env,
        f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n",
    )
    print(f"admin user sandbox-admin, key {key['AccessKeyId']} (allow-all policy)")
    # From here on an unsigned request is refused: prove it.
    try:
        client("iam", endpoint, "AKIANOTAKEY", "wrong").list_users()
        sys.exit("moto accepted an unknown key: IAM authentication is not on")
    except ClientError as e:
        print(f"IAM authentication is on: an unknown key gets {e.response['Error']['Code']}")


def seed(endpoint, admin_env, state_file):
    iam = admin_client("iam", endpoint, admin_env)
    state = {}
    for users, path in ((ROTATED_USERS, ROTATED_PATH), (OTHER_USERS, OTHER_PATH)):
        for user, statuses in users.items():
            iam.create_user(UserName=user, Path=path)
            for active in statuses:
                key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
                if not active:
                    iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
            state[user] = {"path": path, "keys": list_keys(iam, user)}
    with open(state_file, "w") as f:
        json.dump(state, f, indent=2)
    print_keys("Seeded users (keys oldest first):", state)


def list_keys(iam, user):
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    keys.sort(key=lambda k: (k["CreateDate"], k["AccessKeyId"]))
    return [{"id": k["AccessKeyId"], "status": k["Status"]} for k in keys]


def print_keys(title, state, new_ids=None):
    print(title)
    for user, info in state.items():
        keys = ", ".join(
            f"{k['id']} {k['status']}" + (" (new)" if new_ids and k["id"] in new_ids else "")
            for k in info["keys"]
        )
        print(f"  {info['path'] + user:<46} {keys or '(no key)'}")


def report(endpoint, admin_env, state_file, keys_json):
    iam = admin_client("iam", endpoint, admin_env)
    with open(state_file) as f:
        before = json.load(f)
    with open(keys_json) as f:
        new_keys = json.load(f)
    after = {user: {"path": info["path"], "keys": list_keys(iam, user)} for user, info in before.items()}
    new_ids = {entry["AccessKeyId"] for entry in new_keys.values()}
    print_keys("Keys after the rotation (oldest first; (new) = the key written to the outfile):", after, new_ids)

    problems = []
    for user in ROTATED_USERS:
        entry = new_keys.get(user)
        if entry is None:
            problems.append(f"{user}: no new key in {keys_json}")
            continue
        ids = [k["id"] for k in after[user]["keys"]]
        if entry["AccessKeyId"] not in ids:
            problems.append(f"{user}: new key {entry['AccessKeyId']} is not in IAM")
        if len(ids) > 2:
            problems.append(f"{user}: {len(ids)} keys")
        # CURRENT before the run must survive it as LAST, so jobs in flight keep working.
        active_before = [k["id"] for k in before[user]["keys"] if k["status"] == "Active"]
        if active_before and active_before[-1] not in ids:
            problems.append(f"{user}: the previous CURRENT key {active_before[-1]} was deleted")
    for user in OTHER_USERS:
        if after[user] != before[user]:
            problems.append(f"{user}: outside {ROTATED_PATH} but its keys changed")
        if user in new_keys:
            problems.append(f"{user}: outside {ROTATED_PATH} but rotated")

    # Prove the new keys work: STS GetCallerIdentity signed with each of them.
    print("STS GetCallerIdentity signed with the new keys:")
    for user, entry in sorted(new_keys.items()):
        sts = client("sts", endpoint, entry["AccessKeyId"], entry["SecretAccessKey"])
        arn = sts.get_caller_identity()["Arn"]
        print(f"  {entry['AccessKeyId']} -> {arn}")
        if not arn.endswith(f"/{user}"):
            problems.append(f"{user}: its new key authenticates as {arn}")
    print(f"Users outside {ROTATED_PATH} untouched: {', '.join(OTHER_USERS)}")
    if problems:
        print("SANDBOX CHECKS FAILED:", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"All {len(ROTATED_USERS)} users under {ROTATED_PATH} rotated; checks passed.")


if __name__ == "__main__":
    commands = {"bootstrap": bootstrap, "seed": seed, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
