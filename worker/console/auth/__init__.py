"""Who may use the console, and as whom. One identity and role model behind
two ways in, either or both:

- standalone (``users``, ``sessions``): a login page checks a password against a mounted
  file of argon2 hashes and issues a signed, server-side session cookie;
- behind an OIDC proxy such as oauth2-proxy (``proxy``): identity comes from the
  proxy's ``X-Forwarded-User``/``-Email``/``-Groups`` headers, trusted only from the
  configured proxy addresses, and a mapping file gives the roles.

Neither configured: the no-login mode (everyone an operator), on a loopback bind only.

- ``roles``: the roles and the identity a request carries. Pure.
- ``users``, ``proxy``: the two ways to an identity. Pure but for reading their files.
- ``sessions``: signed session tokens, expiry, the CSRF token. Pure (a clock is given).
- ``ratelimit``: login failures per user and per address. Pure.
- ``audit``: the audit log lines and which message texts a user has been shown.
- ``gate``: the HTTP side: login, logout, and the check every endpoint makes.
"""
