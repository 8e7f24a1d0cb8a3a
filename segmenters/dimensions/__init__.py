"""The dimensions a customer is placed in besides behaviour clusters.

Journey stage, RFM, profile (demographic and geographic), interest (the dominant product
category) and custom rules.
"""
