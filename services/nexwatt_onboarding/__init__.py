"""onboarding: enrols subscribers' assets after checking them against the ISO's rules.

HTTP API (`/v1/assets/register`, status changes, asset and resource look-ups) over PostgreSQL;
every change of an asset's record is written with an outbox row in one transaction and relayed
to the compacted `asset.registered` topic, keyed by asset id. ISO rules are data in `rules/`.
"""
