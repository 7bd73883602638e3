from tests.fix_db import pg_dsn  # noqa: F401
from tests.fix_proxy import pg_proxy  # noqa: F401
