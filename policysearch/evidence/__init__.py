"""Evidence: paired statistics and rank agreement (``stats``), the proxy's fidelity (``fidelity``
and its report ``fidelity_report``), ``validate`` (the only reader of the test split), the
benchmarks (``bench``) and the machine and commit a run states (``runinfo``)."""
