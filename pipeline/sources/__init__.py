"""Reading the tenant: Defender for Endpoint and Graph clients, credentials, the snapshot file.

``http`` is the one HTTP client (rate budgets, retries, streamed paging, typed ``errors``);
``auth`` supplies tokens; ``mde`` and ``graph`` are the API calls; ``collect`` reads every
source into the ``snapshot`` file; ``collector_doc`` checks documents from the endpoint collector.
"""
