"""What crosses process boundaries: the vocabulary, the event schema, the producer's status,
the databases' models, and the small files the programs leave each other."""
