Los niños juegan en el jardín detrás de la casa.
Mañana por la mañana tomaremos el tren a las montañas.
La biblioteca cierra a las seis los sábados.
Llovió toda la noche y el río está muy alto.
¿Podría decirme dónde está la farmacia más cercana?
El nuevo puente se abrirá al tráfico la próxima primavera.
Lleva tres años aprendiendo a tocar el piano.
El mercado vende pescado fresco todos los viernes por la mañana.
Nuestra profesora nos pidió leer dos capítulos antes del lunes.
El hospital busca enfermeras que hablen varios idiomas.
Los agricultores están preocupados porque no ha llovido en semanas.
Por favor, cierra la ventana cuando salgas de la habitación.
