"""Package (``workflow/rules/package.smk``): trained model folders made self-contained for ``opir predict``."""
