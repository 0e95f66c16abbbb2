"""One module per provider: everything true only of that provider lives in its module."""
