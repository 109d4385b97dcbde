"""moto_server, with IAM's access-key quota checked and taken in one step.

Real IAM never lets a user hold a third access key: of two CreateAccessKey calls that race
for a user's last free slot, one gets LimitExceeded. credrot relies on that when two runs
rotate the same user at once (tests/e2e/concurrency.rs). moto counts the user's keys and
appends the new one in separate steps, and its server answers requests on several threads,
so two racing calls can both pass the count. This runs moto's own server with that method
under a lock; everything else is moto unchanged.

Usage: python3 moto_server.py [moto_server's arguments]
"""

import sys
import threading

from moto.iam.models import IAMBackend
from moto.server import main

_unlocked_create_access_key = IAMBackend.create_access_key
_quota_lock = threading.Lock()


def _create_access_key(self, *args, **kwargs):
    with _quota_lock:
        return _unlocked_create_access_key(self, *args, **kwargs)


IAMBackend.create_access_key = _create_access_key

if __name__ == "__main__":
    sys.exit(main())
