"""Training: models by name (``models``) and the compiled trainer that scores many policies at
one budget (``trainer``)."""
