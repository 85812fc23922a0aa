"""Defender coverage-gap pipeline.

Finds the Microsoft Defender for Endpoint protections that do not enforce on a device because
Defender Antivirus is passive, in EDR block mode or disabled, and closes the gap.

The package is arranged as rooms with one-way arrows between them (see README, "Architecture"):
``model``, ``matrix``, ``modes`` and ``evaluate`` form a pure core with no I/O; ``sources`` and
``sinks`` talk to the outside; ``act``, ``detect``, ``cycle`` and ``cli`` put them together.
"""

__version__ = "0.1.0"
