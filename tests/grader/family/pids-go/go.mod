module pidsonly

go 1.19
