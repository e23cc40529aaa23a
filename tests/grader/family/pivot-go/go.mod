module pivot

go 1.19
