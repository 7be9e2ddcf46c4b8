start_time + toIntervalSecond(30) TO VOLUME 'cold', start_time + toIntervalSecond(90) DELETE
