"""Tests of the reference model service (segformer_service/)."""
