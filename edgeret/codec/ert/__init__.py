"""The .ert container: header, CRC chunks, and the integer entropy coding of latent symbols."""
