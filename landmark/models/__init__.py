from landmark.models.registry import check_builds, create_loss, create_model

__all__ = ["check_builds", "create_loss", "create_model"]
