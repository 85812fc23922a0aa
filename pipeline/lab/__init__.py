"""The lab tenant: a seeded Contoso fleet behind a local server that speaks Microsoft's APIs.

``fleet`` generates devices, ``indicators`` the tenant's custom indicators, ``collector_docs`` the
documents the endpoint collector would send, ``server`` the HTTP server with its token endpoint,
limits and fault injection (``faults``). Nothing outside this package knows it is talking to a lab.
"""
