"""Django's own session tests, vendored from Django 5.2.19 (BSD-3-Clause; see LICENSE and
PROVENANCE.md here).  ``tests/test_django_sessions_suite.py`` runs them on this engine."""
