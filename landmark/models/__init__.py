from landmark.models.registry import create_model

__all__ = ["create_model"]
