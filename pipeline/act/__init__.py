"""Acting on what the evaluation found: compensating controls for protections that do not enforce.

``blocklist`` turns the tenant's network indicators into lists that a proxy, a DNS resolver or a
firewall enforces, for the devices whose Defender Antivirus is passive and therefore ignores them.
"""
