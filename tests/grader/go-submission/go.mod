module devoxx-docker

go 1.19
