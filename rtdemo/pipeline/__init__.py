"""The whole method from one YAML recipe: loading, validating and running every stage."""
