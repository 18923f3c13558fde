"""What crosses process boundaries: the event schema, the databases' models, and the small files the programs leave each other."""
