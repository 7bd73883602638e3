"""The build of tuco the suite means to test: ``EXPECT_TUCO_BUILD`` (scripts/test: compiled; scripts/fast: pure).

Unset (a plain ``pytest`` in the checkout's editable install), it is pure. The session refuses to start when the
imported tuco is another build (tests/conftest.py), and server processes say theirs in ``/readyz``, which tests
compare with this.
"""

import os

EXPECTED = os.environ.get("EXPECT_TUCO_BUILD", "pure")
