"""Reading what users bring: tables, images, content-addressed blobs, the data folder."""
