"""Configuration as data: experiments (``experiment``: the target, the proxy, the splits, the
search, the race), the typed-record machinery that validates them (``schema``), and the table of
samplers and pruners by name (``samplers``)."""
