"""Provisioning control center: login with MFA, JWT, users, policies, audit."""
