"""The study, the search's source of truth: the typed, versioned study and trial records
(``record``), creating and joining a study (``store``), Optuna storages and the study lock
(``storage``), and search spaces as data (``spaces``)."""
