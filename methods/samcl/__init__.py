"""methods/samcl"""
