"""The README's ASGI snippets, each a complete app (``tests/test_asgi_readme.py`` serves them
with uvicorn on DynamoDB Local: ``AWS_ENDPOINT_URL_DYNAMODB`` and ``SESSIONS_TABLE`` set)."""
