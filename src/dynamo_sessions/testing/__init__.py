"""Test support for suites that keep their sessions in DynamoDB - this library's and yours.

* :mod:`.servers`: DynamoDB Local and moto's server on free loopback ports, and a client for
  them (``local_client``).
* :mod:`.calls`: ``CallCounter``, the DynamoDB calls a client makes, by operation.
* :mod:`.plugin`: pytest fixtures on those servers (a server per test session, a client, a
  sessions table ready and torn down after each test).  Installing ``dynamo-sessions``
  registers the plugin with pytest (entry point ``pytest11``); nothing else is needed.

Nothing of the library's runtime imports this package (the demo does, inside its functions).
Importing it is cheap: the servers module loads on first use.
"""
