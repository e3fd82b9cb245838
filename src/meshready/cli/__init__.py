"""Command-line front end (``meshready`` and the kubectl plugin ``kubectl-meshready``)."""
