"""Database operations, keyword-only, one module per kind of object. Every read is scoped to
a team: another team's object is simply not found."""
