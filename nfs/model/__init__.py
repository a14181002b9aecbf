"""The NFS network: DiffusionNet encoders, skinning block and displacement decoder."""
