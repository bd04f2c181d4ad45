pytest_plugins = ["tests.pg_server"]
