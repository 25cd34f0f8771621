"""The Complaint schema and the normalisation steps (Inbound -> Complaint)."""
from normalizer.pipeline import NormalizationError, Normalizer, NormalizerSettings
from normalizer.schema import SCHEMA_VERSION, Attachment, Complaint, Customer, Identity, SubmittedBy

__all__ = [
    "SCHEMA_VERSION",
    "Attachment",
    "Complaint",
    "Customer",
    "Identity",
    "NormalizationError",
    "Normalizer",
    "NormalizerSettings",
    "SubmittedBy",
]
