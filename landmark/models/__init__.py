from landmark.models.registry import check_variant, create_model

__all__ = ["check_variant", "create_model"]
