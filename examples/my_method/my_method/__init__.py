"""An example of a compression method that lives outside the harness (docs/adding-a-method.md)."""
