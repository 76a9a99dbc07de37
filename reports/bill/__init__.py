"""The provider's bill beside callstream's cost: imports of provider usage and cost exports,
their reconciliation with callstream's aggregates, and callstream's cost as FOCUS rows.

Pure cores (`rows`, `formats`, `reconcile`, `focus`, `corrections`) and thin shells (`store`,
`cli`), like the rest of `reports/`.
"""
