"""``python -m gateway.inbox hash-password | new-secret-key | new-api-token NAME``."""
import sys

from gateway.inbox.commands import main

sys.exit(main())
