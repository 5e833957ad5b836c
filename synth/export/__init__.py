"""Exports: Parquet shards in the Hugging Face layout, the dataset card, the manifest."""
