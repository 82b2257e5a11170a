"""Results: the identity of an evaluation cell and, later, the arithmetic over cells."""
