module devoxx-final

go 1.19
