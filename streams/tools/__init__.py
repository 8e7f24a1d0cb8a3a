"""Operator tools: commands that feed, inspect or repair a deployment from the outside."""
