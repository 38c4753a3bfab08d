"""Transports: what carries the session protocol's DynamoDB calls (botocore today), and the one
place DynamoDB's errors become this library's (:mod:`.translate`)."""
